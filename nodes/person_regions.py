"""Node: Person Regions (PersonalVideo), one region mask per person per frame, steady left-to-right."""
from ..regions.person_regions import find_person_regions

CATEGORY = "PersonalVideo"


class PersonRegionsNode:
    DESCRIPTION = (
        "Finds the two people in the frames of a reference or pose-source video and gives one region mask per "
        "person and frame, numbered from left to right in the first frame that shows both and kept steady "
        "after that (also when they walk past each other). From the faces (face_analysis) or from another "
        "pack's mask of the people (person_mask: each region is then the person's silhouette)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "find"
    RETURN_TYPES = ("MASK", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("person_1", "person_2", "preview", "summary")
    OUTPUT_TOOLTIPS = (
        "Per frame, the region of the person on the left (in the first frame that shows both).",
        "Per frame, the region of the person on the right.",
        "The frames with person 1's region tinted green and person 2's orange.",
        "Where the regions came from and in how many frames each person was found.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames of the video the people come from (e.g. the reference "
                                                "video of a pose workflow, before DWPose), one per output frame."}),
                "feather": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 0.5, "step": 0.01,
                                      "tooltip": "Soft edge between the two people's regions, as a fraction of the "
                                                 "width (0 = hard edge)."}),
                "smoothing": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 16.0, "step": 0.5,
                                        "tooltip": "Steadiness: each person's position is smoothed over this many "
                                                   "frames (0 = follow every detection)."}),
                "max_gap": ("INT", {"default": 4, "min": 0, "max": 64,
                                    "tooltip": "Frames where a person is not found are filled from neighbouring "
                                               "frames when the gap is at most this long; beyond it their "
                                               "region is empty there."}),
            },
            "optional": {
                "face_analysis": ("FACEANALYSIS", {
                    "tooltip": "Find the people by their faces: 'Load Face Analysis (PersonalVideo)' or a PuLID / "
                               "InstantID insightface loader. Each person's region is their side of the picture."}),
                "person_mask": ("MASK", {
                    "tooltip": "Or: a mask of the people per frame from another pack (segmentation); used instead "
                               "of face_analysis when both are connected. Each region is one person's silhouette."}),
            },
        }

    def find(self, images, feather, smoothing, max_gap, face_analysis=None, person_mask=None):
        detect_all = None
        if person_mask is None and face_analysis is not None:
            from ..face_detail.detect import stack_all_faces

            detect_all = stack_all_faces(face_analysis)
        result = find_person_regions(images, detect_all, person_mask, 2, feather, smoothing, max_gap)
        return (result.masks[0], result.masks[1], result.preview, result.summary)


NODES = (("PV_PersonRegions", PersonRegionsNode, "Person Regions (PersonalVideo)"),)
