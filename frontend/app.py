"""SKIN's page: a dermoscopy photo in; the eight lesion classes ranked, in plain language.

Run it with `python -m serve.page` (or `make serve`, which starts TorchServe too). The page only
lays things out: the client, the photo preparation, the ranking and the heatmap overlay live in
their own modules.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from contract.formats import FILE_SUFFIXES
from frontend.chart import ranking_chart
from frontend.connection import ClientConfig, ServerProblem, SkinClient
from frontend.explanation import Explanation
from frontend.overlay import overlay_png
from frontend.photo import Photo, prepare_photo
from frontend.ranking import Ranking
from frontend.texts import LANGUAGES, Texts
from frontend.verdict import GateVerdict
from imaging.decode import InvalidImageError

# What the server accepts, by the names files carry.
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in FILE_SUFFIXES]
Answer = TypeVar("Answer")


@st.cache_resource
def client_for(config: ClientConfig) -> SkinClient:
    return SkinClient(config)


def ask_once(kind: str, shot: UploadedFile, question: Callable[[SkinClient], Answer],
             texts: Texts) -> Answer | None:
    """The server's answer of this kind for this photo, or None after showing why there is none."""
    # Kept per session, so switching language or the overlay re-draws without asking again.
    kept = st.session_state.get(kind)
    if kept is not None and kept[0] == shot.file_id:
        return kept[1]
    try:
        with st.spinner(texts.working):
            answer = question(client_for(ClientConfig.from_env()))
    except ServerProblem as failure:
        st.error(texts.problems[failure.problem].format(detail=failure.detail))
        return None
    st.session_state[kind] = (shot.file_id, answer)
    return answer


def classify(shot: UploadedFile, body: bytes, texts: Texts) -> Ranking | None:
    return ask_once("answer", shot, lambda client: client.classify(body), texts)


def explain(shot: UploadedFile, body: bytes, texts: Texts) -> Explanation | None:
    return ask_once("explanation", shot, lambda client: client.explain(body), texts)


def show_photo(shot: UploadedFile, photo: Photo, texts: Texts) -> None:
    """The photo; with the toggle on, the part the model saw, coloured by what it looked at."""
    picture = st.empty()  # above the toggle, though drawn after it
    if st.toggle(texts.overlay_toggle, key="overlay"):
        explanation = explain(shot, photo.body, texts)
        if explanation is not None:
            picture.image(overlay_png(photo.body, explanation), width="stretch")
            st.caption(texts.overlay_caption.format(name=texts.name(explanation.lesion)))
            return
    picture.image(photo.body, width="stretch")


def percent(probability: float) -> str:
    return f"{probability:.0%}"


def show_ranking(ranking: Ranking, texts: Texts) -> None:
    top = ranking.top
    st.caption(texts.most_likely)
    st.subheader(texts.top_result.format(name=texts.name(top.lesion),
                                         probability=percent(top.probability)))
    st.write(texts.description(top.lesion))
    classes = texts.list_separator.join(f"{texts.name(s.lesion)} {percent(s.probability)}"
                                        for s in ranking.concerning)
    summary = dict(share=percent(ranking.concerning_probability), classes=classes,
                   threshold=percent(ranking.referral_threshold))
    if ranking.flagged:
        st.error(texts.flag.format(**summary), icon=":material/warning:")
    else:
        st.info(texts.no_flag.format(**summary))
    # The gate refuses most photos taken without a dermatoscope, not all (MODEL_CARD.md).
    st.caption(texts.dermoscopy_only)


def show_refusal(gate: GateVerdict, texts: Texts) -> None:
    st.subheader(texts.refused_title)
    st.warning(texts.refusal(gate), icon=":material/photo_camera:")
    st.caption(texts.refused_note)


def show_chart(ranking: Ranking, texts: Texts) -> None:
    st.markdown(f"**{texts.all_classes}**")
    st.altair_chart(ranking_chart(ranking, texts), width="stretch")
    st.caption(texts.model_version.format(model=ranking.model, version=ranking.version))


st.set_page_config(page_title="SKIN", page_icon=":material/dermatology:")
language = st.segmented_control("Language / 语言", list(LANGUAGES), default="English",
                                key="language", label_visibility="collapsed")
texts = LANGUAGES[language or "English"]  # a second tap deselects; keep English then

st.title(texts.title)
st.warning(texts.disclaimer, icon=":material/medical_information:")
st.markdown(texts.tips)

source = st.segmented_control(texts.source_label, ["upload", "camera"], default="upload",
                              format_func=lambda s: texts.upload if s == "upload" else texts.camera,
                              key="source")
if source == "camera":
    # The default resolution follows the widget's width (a few hundred px on a phone); 1080p is
    # the highest Streamlit asks the camera for. prepare_photo shrinks it again before upload.
    shot = st.camera_input(texts.camera_label, resolution="1080p", key="camera")
else:
    shot = st.file_uploader(texts.uploader_label, type=UPLOAD_TYPES, key="upload")

photo = None
if shot is not None:
    try:
        photo = prepare_photo(shot.getvalue())
    except InvalidImageError as problem:
        st.error(texts.unreadable.format(detail=problem))
if photo is not None:
    left, right = st.columns([2, 3])
    with left:
        show_photo(shot, photo, texts)
    with right:
        ranking = classify(shot, photo.body, texts)
        if ranking is not None and not ranking.gate.accepted:
            show_refusal(ranking.gate, texts)
        elif ranking is not None:
            show_ranking(ranking, texts)
    if ranking is not None and ranking.gate.accepted:
        show_chart(ranking, texts)
