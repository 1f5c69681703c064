"""Node: Load Face Analysis (PersonalVideo)."""
from ..training.face.model_paths import LICENSE_NOTE, MODEL_PACKS
from ..training.face.providers import PROVIDER_CHOICES

CATEGORY = "PersonalVideo"


class LoadFaceAnalysis:
    DESCRIPTION = (
        "Loads the insightface face detector and recogniser from ComfyUI/models/insightface/models/<pack> "
        "(the folder PuLID and InstantID use). The output is an insightface FaceAnalysis: it plugs into those "
        "packs' nodes, and their loaders' FACEANALYSIS outputs plug into ours. Nothing is downloaded; "
        f"{LICENSE_NOTE}."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("FACEANALYSIS",)
    RETURN_NAMES = ("face_analysis",)
    OUTPUT_TOOLTIPS = (
        "Face detector + recogniser (insightface FaceAnalysis) for PersonalVideo's identity training and "
        "face similarity, and for PuLID/InstantID/IPAdapter FaceID nodes.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_pack": (list(MODEL_PACKS), {
                    "default": "antelopev2",
                    "tooltip": "antelopev2: SCRFD detector + glintr100 (the ResNet-100 PersonalVideo trains with). "
                               "buffalo_l: det_10g detector + w600k_r50 recogniser (a different recogniser, "
                               "useful to evaluate face similarity independently of training)."}),
                "provider": (list(PROVIDER_CHOICES), {
                    "default": "auto",
                    "tooltip": "Where onnxruntime runs face detection. auto: the best this onnxruntime offers "
                               "(CUDA, then ROCm, then DirectML, then CPU). If CUDA is asked for but unavailable, "
                               "the console says why once. The training encoder itself runs in PyTorch."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_pack):
        """Checked when the prompt is queued, so a missing pack is reported before anything runs."""
        from ..training.face.errors import FaceStackError
        from ..training.face.model_paths import find_model_pack

        try:
            find_model_pack(model_pack)
        except FaceStackError as e:
            return str(e)
        return True

    def load(self, model_pack, provider):
        from ..training.face.analysis import build_face_analysis

        return (build_face_analysis(model_pack, provider),)


NODES = (("PV_LoadFaceAnalysis", LoadFaceAnalysis, "Load Face Analysis (PersonalVideo)"),)
