"""SKIN's Streamlit frontend: a thin page over TorchServe's /predictions/skin endpoint."""
