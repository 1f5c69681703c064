"""Node: Identity Prompt (PersonalVideo): puts an identity's trigger phrase into a prompt."""

CATEGORY = "PersonalVideo"
PLACEHOLDER = "{identity}"


def identity_prompt(trigger_phrase: str, text: str) -> str:
    trigger = (trigger_phrase or "").strip()
    if PLACEHOLDER in text:
        return text.replace(PLACEHOLDER, trigger)
    body = text.strip()
    return f"{trigger}, {body}" if body and trigger else (trigger or body)


class IdentityPrompt:
    DESCRIPTION = (
        "Writes your prompt around an identity's trigger phrase (e.g. 'embedding:alice woman'): {identity} in the "
        "text is replaced by it, or it is put first. Wire the result into a CLIP Text Encode's text. Linking the "
        "trigger from the trainer also makes the prompt wait for training, so the new embedding exists when the "
        "prompt is encoded."
    )
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("prompt",)
    OUTPUT_TOOLTIPS = ("The prompt with the trigger phrase in it, for a CLIP Text Encode's text input.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                # text first: frontends of 2024 keep a widget for a forceInput input and fill widgets by
                # position, so a socket-only input placed first would take the saved text.
                # dynamicPrompts off: those frontends otherwise read {identity} as a {a|b} choice.
                "text": ("STRING", {"multiline": True, "dynamicPrompts": False,
                                    "default": f"{PLACEHOLDER} walking on a beach at sunset, smiling",
                                    "tooltip": f"Your prompt. {PLACEHOLDER} marks where the identity goes; without "
                                               "it the trigger phrase is put first."}),
                "trigger_phrase": ("STRING", {"forceInput": True, "tooltip":
                                              "From 'Load SIA Adapter' or 'Train PersonalVideo Identity'."}),
            }
        }

    def build(self, trigger_phrase, text):
        return (identity_prompt(trigger_phrase, text),)


NODES = (("PV_IdentityPrompt", IdentityPrompt, "Identity Prompt (PersonalVideo)"),)
