"""What `streamlit run` serves (serve/page.py starts it): the page, app.py, on Streamlit's own server, with
phone mode's pass phrase in front of all of it (frontend/access.py). Streamlit finds ``app`` here
and runs it with uvicorn, with the address, port, certificate and upload limit given on its
command line."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from frontend.access import gate_from_env, request_body_limit

app = st.App(Path(__file__).with_name("app.py"), middleware=gate_from_env(request_body_limit()))
