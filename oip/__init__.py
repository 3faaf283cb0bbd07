"""The Open Inference Protocol's routes that TorchServe 0.12 lacks, in front of it (front.py), with
the binary tensor data extension (binary.py); ``python -m oip`` runs it."""
