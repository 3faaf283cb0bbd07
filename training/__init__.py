"""Training, calibration and evaluation of the SKIN ResNet34 (run as ``python -m training.train``)."""
