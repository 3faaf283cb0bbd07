"""The pass phrase that phone mode asks for before it shows anything: the page is on the LAN then,
and everyone on that network could use it otherwise. ``make serve`` prints the phrase at start."""
from __future__ import annotations

import hmac
import os
import secrets

import streamlit as st

from frontend.texts import Texts

PASS_PHRASE_VARIABLE = "SKIN_PASS_PHRASE"


def new_pass_phrase() -> str:
    """Easy to type on a phone, hard to guess: three groups of six hex digits (72 bits)."""
    return "-".join(secrets.token_hex(3) for _ in range(3))


def require_pass_phrase(texts: Texts) -> None:
    """Stop the page here until this session has typed the pass phrase (when one is set)."""
    expected = os.environ.get(PASS_PHRASE_VARIABLE)
    if not expected or st.session_state.get("pass_phrase_ok"):
        return
    typed = st.text_input(texts.pass_phrase_label, type="password", key="pass_phrase")
    if typed and hmac.compare_digest(typed.strip().lower().encode(), expected.encode()):
        st.session_state["pass_phrase_ok"] = True
        st.rerun()
    if typed:
        st.error(texts.pass_phrase_wrong)
    st.stop()
