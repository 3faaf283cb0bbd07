"""Every sentence the page shows, in English and Chinese; lesion names come from classes.json."""
from __future__ import annotations

from dataclasses import dataclass

from api.problems import Problem
from contract.classes import LesionClass
from contract.formats import FORMAT_LABELS, FORMAT_NAMES
from contract.refusals import DETAILS
from frontend.verdict import GateVerdict


@dataclass(frozen=True)
class Texts:
    chinese: bool
    title: str
    disclaimer: str
    tips: str
    source_label: str
    upload: str
    camera: str
    uploader_label: str
    camera_label: str
    working: str
    most_likely: str
    top_result: str  # {name}, {probability}
    list_separator: str
    flag: str  # {share}: the four classes together; {classes}: each of them; {threshold}
    no_flag: str  # as flag
    dermoscopy_only: str  # beside every answer: what the model learned from
    all_classes: str
    probability_column: str
    risk_names: dict[str, str]
    model_version: str  # {model}, {version}
    unreadable: str  # {detail}: why the page could not read the file
    problems: dict[Problem, str]  # {detail}
    overlay_toggle: str
    overlay_caption: str  # {name}: the class the heatmap explains
    refused_title: str
    refused_note: str
    refusals: dict[str, str]  # gate reason -> why and how to take the photo again
    pass_phrase_label: str
    pass_phrase_wrong: str

    def name(self, lesion: LesionClass) -> str:
        return lesion.name_zh if self.chinese else lesion.name

    def description(self, lesion: LesionClass) -> str:
        return lesion.description_zh if self.chinese else lesion.description

    def refusal(self, gate: GateVerdict) -> str:
        """Why the photo was refused and what to do; the server's own sentence for a reason these
        texts do not cover."""
        return self.refusals.get(gate.reason, gate.detail)


ENGLISH = Texts(
    chinese=False,
    title="SKIN: dermoscopy lesion classifier",
    disclaimer="This is not a diagnosis; see a dermatologist about any changing lesion.",
    tips="**For a useful photo:** in focus (tap the lesion to focus); the lesion centred; "
         "the whole lesion in the frame; the dermatoscope in contact with the skin.",
    source_label="Photo",
    upload="Upload a file",
    camera="Use the camera",
    uploader_label=f"A dermoscopy photo ({FORMAT_NAMES})",
    camera_label="Take a dermoscopy photo",
    working="Classifying…",
    most_likely="Most likely",
    top_result="{name}: {probability}",
    list_separator=", ",
    flag="**See a dermatologist soon.** Malignant or pre-malignant classes together: **{share}** "
         "({classes}). This model raises the flag from {threshold}: the level that caught 95% of "
         "malignant and pre-malignant lesions in its validation images. Many benign lesions reach "
         "it too, so the flag means \"have it checked\", not \"it is cancer\".",
    no_flag="Malignant or pre-malignant classes together: {share} ({classes}), below the "
            "{threshold} that raises a flag. About 1 in 20 such lesions stays below it, so see a "
            "dermatologist about any lesion that changes.",
    dermoscopy_only="This model learned from dermoscopy photos only, taken through a dermatoscope. "
                    "A photo taken without one (a phone's close-up) gets a less reliable answer; "
                    "photograph the lesion through a dermatoscope instead.",
    all_classes="All eight classes",
    probability_column="probability",
    risk_names={"malignant": "malignant", "pre-malignant": "pre-malignant", "benign": "benign"},
    model_version="Model {model}, version {version}",
    unreadable="This file cannot be read as a photo ({detail}). Nothing was sent.",
    # Nothing here names a URL, a file or a command: a phone user can act on none of them, and the
    # page's log (frontend.connection) holds what an operator needs.
    problems={
        Problem.NOT_RUNNING: "The model server is not answering. Try again in a minute; if it "
                             "keeps failing, tell whoever runs SKIN.",
        Problem.NOT_LOADED: "The model is still loading. Wait a minute and try again.",
        Problem.INVALID_IMAGE: "The server could not read this image: {detail}",
        Problem.TOO_LARGE: "The file is too large for the server. Use a smaller photo.",
        Problem.BUSY: "The model server is busy or restarting. Try again in a few seconds.",
        Problem.KEY: "The model server did not accept this page's access key. Tell whoever runs "
                     "SKIN; restarting SKIN gives the page a new key.",
        Problem.TIMEOUT: "The model server took too long to answer. Try again.",
        Problem.SERVER_ERROR: "The model server failed while reading this photo, twice. Try again "
                              "in a minute; if it keeps failing, tell whoever runs SKIN.",
        Problem.UNEXPECTED: "The model server gave an answer this page cannot read. Tell whoever "
                            "runs SKIN.",
    },
    overlay_toggle="Show what the model looked at",
    overlay_caption="The part of the photo the model sees. Warm colours mark the areas that counted "
                    "most towards {name}; this shows where the model looked, not why it is right.",
    refused_title="This photo cannot be classified",
    refused_note="No class is shown for a photo the model cannot read: its answer would mean nothing.",
    refusals=dict(DETAILS),
    pass_phrase_label="Pass phrase (shown where SKIN was started)",
    pass_phrase_wrong="That is not the pass phrase. Type it as SKIN printed it at start.",
)

CHINESE = Texts(
    chinese=True,
    title="SKIN：皮肤镜病变分类",
    disclaimer="本结果不是诊断；任何正在变化的皮肤病变请咨询皮肤科医生。",
    # The colon stays outside the bold: CommonMark does not close ** between "：" and a letter.
    tips="**拍摄要点**：对焦清晰（点按病变处对焦）；病变位于画面中央；整个病变都在画面内；皮肤镜紧贴皮肤。",
    source_label="照片",
    upload="上传文件",
    camera="使用相机",
    uploader_label=f"皮肤镜照片（{'、'.join(FORMAT_LABELS[:-1])} 或 {FORMAT_LABELS[-1]}）",
    camera_label="拍摄皮肤镜照片",
    working="正在分类…",
    most_likely="最可能",
    top_result="{name}：{probability}",
    list_separator="、",
    flag="**请尽快就诊皮肤科。** 恶性或癌前病变类别合计：**{share}**（{classes}）。"
         "本模型在合计达到 {threshold} 时提示：在其验证图像中，这一水平能发现 95% 的恶性和癌前病变。"
         "许多良性病变也会达到这一水平，所以提示的意思是“请检查”，而不是“这是癌症”。",
    no_flag="恶性或癌前病变类别合计：{share}（{classes}），低于提示阈值 {threshold}。"
            "约每 20 个此类病变中有 1 个低于该阈值，因此任何有变化的病变都请就诊皮肤科。",
    dermoscopy_only="本模型只用皮肤镜照片（通过皮肤镜拍摄）训练。不用皮肤镜拍摄的照片（手机近拍）结果不可靠；"
                    "请通过皮肤镜拍摄病变。",
    all_classes="全部八个类别",
    probability_column="概率",
    risk_names={"malignant": "恶性", "pre-malignant": "癌前病变", "benign": "良性"},
    model_version="模型 {model}，版本 {version}",
    unreadable="无法将此文件读取为照片（{detail}）。未发送任何内容。",
    problems={
        Problem.NOT_RUNNING: "模型服务器没有响应。请一分钟后重试；如果仍然失败，请告知 SKIN 的管理员。",
        Problem.NOT_LOADED: "模型仍在加载。请稍候一分钟再试。",
        Problem.INVALID_IMAGE: "服务器无法读取此图像：{detail}",
        Problem.TOO_LARGE: "文件太大，服务器无法接收。请使用较小的照片。",
        Problem.BUSY: "模型服务器繁忙或正在重启，请几秒后重试。",
        Problem.KEY: "模型服务器不接受本页面的访问密钥。请告知 SKIN 的管理员；重启 SKIN 会给页面新的密钥。",
        Problem.TIMEOUT: "模型服务器响应超时，请重试。",
        Problem.SERVER_ERROR: "模型服务器在读取这张照片时两次出错。请一分钟后重试；"
                              "如果仍然失败，请告知 SKIN 的管理员。",
        Problem.UNEXPECTED: "模型服务器返回了本页面无法读取的结果。请告知 SKIN 的管理员。",
    },
    overlay_toggle="显示模型关注的区域",
    overlay_caption="这是模型看到的照片区域。暖色标出对“{name}”这一结果影响最大的部分；"
                    "它说明模型看了哪里，而不说明结果是否正确。",
    refused_title="无法对这张照片进行分类",
    refused_note="模型无法读取的照片不显示类别：那样的结果没有意义。",
    refusals={
        "too_small": "照片太小，无法看清病变。请发送相机拍摄的原尺寸照片，而不是缩略图或裁剪图。",
        "too_dark": "照片太暗。请打开皮肤镜的灯光或换到更明亮的地方，然后重新拍摄。",
        "too_bright": "照片太亮或发白。请避免闪光灯和阳光直射，然后重新拍摄。",
        "blurred": "照片模糊或看不到细节。请让皮肤镜紧贴皮肤，点按病变处对焦，然后重新拍摄。",
        "not_dermoscopy": "这看起来不像皮肤病变的皮肤镜照片。请通过皮肤镜拍摄单个病变，病变居中并占据画面的大部分。",
        "gate_error": "无法检查这张照片。请重试，或重新拍摄一张。",
    },
    pass_phrase_label="口令（显示在启动 SKIN 的地方）",
    pass_phrase_wrong="口令不正确。请按 SKIN 启动时显示的内容输入。",
)

LANGUAGES = {"English": ENGLISH, "中文": CHINESE}
