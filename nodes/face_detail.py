"""Node: Face Detail Pass (PersonalVideo), Magic-Me's Face VCD."""
from ..face_detail import SamplingSettings, face_detail_pass

CATEGORY = "PersonalVideo"
DEFAULTS = SamplingSettings()


class FaceDetailPass:
    DESCRIPTION = (
        "Sharpens the face of a generated video (Magic-Me's Face VCD): finds the face in every frame, follows it "
        "with a steady track, crops it with context, enlarges the crops to the working size, re-denoises that "
        "face video partially with the MODEL (all frames together, so the motion model, the identity adapter and "
        "LoRAs take part) and pastes it back with a feathered mask. Pixels outside the mask and frames without "
        "a face are left exactly as they were."
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("images", "face_mask", "track_preview", "summary")
    OUTPUT_TOOLTIPS = (
        "The frames with the re-denoised face pasted back.",
        "Per frame, where and how strongly the new face was pasted (0 = unchanged).",
        "The frames with the face track drawn: green = detected, orange = filled from neighbouring frames.",
        "How many frames were re-denoised, filled from neighbours, or passed through without a face.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        d = DEFAULTS
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames of the generated video (after VAE Decode)."}),
                "face_analysis": ("FACEANALYSIS", {
                    "tooltip": "From 'Load Face Analysis (PersonalVideo)' or a PuLID / InstantID insightface loader; "
                               "the largest face of each frame is followed."}),
                "model": ("MODEL", {"tooltip": "The MODEL you generated with: the same motion model, identity "
                                               "adapter and LoRAs."}),
                "positive": ("CONDITIONING", {"tooltip": "The prompt you generated with (with the trigger phrase)."}),
                "negative": ("CONDITIONING", {"tooltip": "The negative prompt you generated with."}),
                "vae": ("VAE", {"tooltip": "The VAE of the checkpoint."}),
                "seed": ("INT", {"default": d.seed, "min": 0, "max": 0xffffffffffffffff,
                                 "control_after_generate": True, "tooltip": "Seed of the re-denoise noise."}),
                "steps": ("INT", {"default": d.steps, "min": 1, "max": 10000,
                                  "tooltip": "Sampling steps of the re-denoise (as in KSampler; AnimateLCM: 4 to 8)."}),
                "cfg": ("FLOAT", {"default": d.cfg, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance (AnimateLCM: 1 to 2)."}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {
                    "default": d.sampler_name, "tooltip": "Sampler of the re-denoise (AnimateLCM: lcm)."}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {
                    "default": d.scheduler, "tooltip": "Scheduler of the re-denoise (AnimateLCM: sgm_uniform)."}),
                "denoise": ("FLOAT", {"default": d.denoise, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "How much of the face is redrawn: 0.8 as in the paper; lower keeps "
                                                 "more of the original face, higher redraws more."}),
                "working_size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                                         "tooltip": "Side of the face crops while they are re-denoised (SD1.5: 512)."}),
                "padding": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 3.0, "step": 0.05,
                                      "tooltip": "Context around the face box, as a fraction of its side on every "
                                                 "side (0.5: the crop is twice the face box)."}),
                "mask_feather": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 0.5, "step": 0.01,
                                           "tooltip": "Soft edge of the pasted crop, as a fraction of its side "
                                                      "(0 = hard edge)."}),
                "smoothing": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 16.0, "step": 0.5,
                                        "tooltip": "Steadiness of the track: Gaussian smoothing of the face box over "
                                                   "this many frames (0 = follow every detection)."}),
                "max_gap": ("INT", {"default": 4, "min": 0, "max": 64,
                                    "tooltip": "Frames without a detection are filled from their neighbours when "
                                               "the gap is at most this long; farther frames count as having no "
                                               "face and are passed through."}),
            },
            "optional": {
                "region": ("MASK", {
                    "tooltip": "Optional: follow only the face inside this region (e.g. a person's mask from 'Person "
                               "Regions' or a half from 'Region Masks'), one mask or one per frame. For two "
                               "identities chain two passes, each with its person's region, its MODEL (that "
                               "identity's adapter, without a mask) and its prompt. Empty: the largest face."}),
            },
        }

    def run(self, images, face_analysis, model, positive, negative, vae, seed, steps, cfg, sampler_name,
            scheduler, denoise, working_size, padding, mask_feather, smoothing, max_gap, region=None):
        from ..face_detail.detect import region_detector, stack_all_faces, stack_detector

        settings = SamplingSettings(seed, steps, cfg, sampler_name, scheduler, denoise)
        detect, detect_index = None, None
        if region is not None:
            every_face = stack_all_faces(face_analysis)
            detect_index = lambda frames: region_detector(frames, every_face, region)  # noqa: E731
        else:
            detect = stack_detector(face_analysis)
        result = face_detail_pass(images, detect, model, positive, negative, vae, settings,
                                  working_size=working_size, padding=padding, feather=mask_feather,
                                  smoothing=smoothing, max_gap=max_gap, detect_index=detect_index)
        return (result.images, result.masks, result.preview, result.summary)


NODES = (("PV_FaceDetailPass", FaceDetailPass, "Face Detail Pass (PersonalVideo)"),)
