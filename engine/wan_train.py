"""Stage 2 on Wan in the engine: the adapter trained with the identity loss on videos diffusers' Wan makes.

Per iteration, as the node's Wan trainer (:mod:`..training.wan_trainer`) with the same streams of the seed
(:mod:`..training.identity_setup`): a simulated prompt (the class word only: there is no token stage on Wan);
pure noise ``[1, C, (frames - 1) // 4 + 1, h, w]`` from the iteration's generator; ``steps`` (4) Euler steps
on core's ``simple`` schedule at the models' shift (:mod:`.flow_schedule`), the adapter off and no gradient
for all but the last step (in inference mode), the last step with the adapter on and gradient; the first
latent frame alone decoded with gradient through the causal Wan VAE (it decodes to exactly the full decode's
first frame);
loss = ArcFace identity loss + lambda * ||adapter - initial||^2; AdamW on the LoRA only.  Guidance ``cfg``
with the negative prompt, combined on the denoised predictions as core does.  Frames without a face are
skipped and counted; when most have none the run stops with the nodes' message.  The settings are the node's
(:class:`..training.sia_settings.WanSIATrainSettings`).  On CUDA: gradient checkpointing of the transformer's
blocks (``--gradient-checkpointing``), mixed precision with fp32 LoRA weights.
"""
from __future__ import annotations

import os

import torch

from ..sia.adapter import AdapterInfo
from ..sia.families import WAN
from ..training import identity_setup as setup, prompts as prompt_data
from ..training.identity_setup import frame_stream, iteration_generator
from ..training.sia_settings import NEGATIVE_PROMPT, SIAHistory, WanSIATrainSettings
from . import adapter_step, flow_schedule, sia_peft, wan_peft
from .errors import EngineError

NO_FACE_ADVICE = ("Use a Wan model that makes people, keep "
                  "'{class_word}' in every prompt, and a class word such as man, woman or person.")

ENGINE = "diffusers+peft"


def class_word_prompt(template: str, class_word: str) -> str:
    """A prompt template with the class word put in and the token left out (no token stage on Wan)."""
    return " ".join(template.replace("{token}", "").replace("{class_word}", class_word).split())


def guided_denoised(models, x, sigma, context, uncond, cfg: float) -> torch.Tensor:
    """uncond + cfg * (cond - uncond) of the two denoised predictions (one call on a doubled batch);
    the prompt's prediction alone at cfg 1."""
    if uncond is None or cfg == 1.0:
        return models.denoised(x, sigma, context)
    cond, plain = models.denoised(torch.cat([x, x]), sigma, torch.cat([context, uncond])).chunk(2)
    return plain + (cond - plain) * cfg


def run_iteration(models, context, noise, steps: int, precision, uncond=None, cfg: float = 1.0):
    """One training sample from ``noise``; returns the decoded first frame [1, 3, H, W] (gradient to the LoRA)
    and the final denoised latents."""
    sigmas = flow_schedule.simple_sigmas(steps, models.shift)
    x = noise.to(context.device) * float(sigmas[0])      # core's flow noise scaling on an empty latent
    last = steps - 1
    for i in range(steps):
        sia_peft.set_enabled(models.transformer, i == last)
        if i < last:   # adapter off, nothing to train: inference mode, as the node samples these steps
            with torch.inference_mode():
                with precision.autocast():
                    denoised = guided_denoised(models, x, float(sigmas[i]), context, uncond, cfg)
                x = flow_schedule.euler_step(x, denoised, float(sigmas[i]), float(sigmas[i + 1]))
            continue
        with torch.enable_grad(), precision.autocast():
            denoised = guided_denoised(models, x.clone(), float(sigmas[i]), context, uncond, cfg)
    with precision.autocast():
        pixels = models.decode(denoised[:, :, :1])[:, :, 0]
    return pixels, denoised


def train_wan_adapter(models, encode, identity_loss, templates, settings: WanSIATrainSettings, progress=None,
                      negative: str = NEGATIVE_PROMPT) -> SIAHistory:
    """Train the LoRA already attached to ``models.transformer`` (:func:`.wan_peft.attach`); ``encode(text)``
    gives a prompt's text states [1, L, D]; ``templates`` a :class:`..training.prompts.PromptSampler` whose
    draws ``encode`` is given as they are."""
    settings.check()
    transformer = models.transformer
    run = adapter_step.start(transformer, settings, NO_FACE_ADVICE)
    device, precision = run.device, run.precision
    frames_rng = frame_stream(settings.seed)
    shape = models.latent_shape(settings.frames, settings.height, settings.width)
    contexts = {}
    uncond = None
    if settings.cfg != 1.0:
        uncond = encode(negative).detach().to(device)
    try:
        for it in range(settings.iterations):
            text = templates.draw()
            if text not in contexts:
                contexts[text] = encode(text).detach()
            frames_rng.randrange(1)       # the node's frame draw (one frame to draw from on Wan: the first)
            noise = torch.randn(shape, generator=iteration_generator(settings.seed, it))
            pixels, latents = run_iteration(models, contexts[text].to(device), noise.to(device), settings.steps,
                                            precision, uncond, settings.cfg)
            run.update(it, identity_loss, pixels, latents, progress)
    finally:
        run.finish()
    return run.history


def train_wan_identity(models, photos, name: str, class_word: str, face_stack, models_dir: str,
                       settings: WanSIATrainSettings | None = None, rank: int = 4, prompts: str | None = None,
                       overwrite: bool = False, progress=None, negative: str = NEGATIVE_PROMPT) -> dict:
    """Train and save one Wan identity: the adapter file ``<models_dir>/sia/<name>.safetensors`` (no token, no
    embedding file: there is no token stage on Wan).  ``photos``: image tensors [H, W, 3] or files/folders;
    ``face_stack`` a (FaceStack, encoder) pair; ``progress(stage, i, total, loss, similarity)``."""
    from ..sia import save_adapter
    from ..training.face.identity_loss import IdentityLoss
    from ..training.identity_files import sanitise_name
    from . import identity_store
    from .train import photo_paths, read_photo

    name = sanitise_name(name)
    class_word = setup.check_class_word(class_word, "--class-word")
    templates = prompt_data.parse_prompts(prompts) if prompts else prompt_data.default_prompts()
    path = identity_store.identity_paths(models_dir, name)["sia"]
    if os.path.exists(path) and not overwrite:
        raise EngineError(f"an identity named {name!r} exists already ({path}); choose another --name or pass "
                          "--overwrite.")
    settings = settings or WanSIATrainSettings()
    settings.check()
    if rank < 1:
        raise EngineError(f"--rank must be at least 1 (got {rank}).")
    images = [p if torch.is_tensor(p) else read_photo(p) for p in
              (photos if all(torch.is_tensor(p) for p in photos) else photo_paths(photos))]
    stack, encoder = face_stack
    device = next(models.transformer.parameters()).device
    refs = setup.reference_embeddings(stack.detector, encoder, images, settings.seed)
    training = {"method": setup.METHOD, "class_word": class_word, "rank": int(rank),
                "references": len(refs.faces.labels), "sia": settings.to_json(), "prompts": len(templates),
                "token_stage": "none (no token stage on Wan)", "engine": ENGINE}
    info = AdapterInfo(name=name, trigger=class_word, base=WAN, training=training)
    start = setup.initial_adapter(wan_peft.targets(models.transformer), rank, settings.seed, info)
    with torch.random.fork_rng():     # peft's own initialisation draws from the global generator; ours replaces it
        wan_peft.attach(models.transformer, rank, float(rank), adapter=start)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings.to(device))

    def encode(template):
        return models.encode(class_word_prompt(template, class_word))

    def report(i, loss, similarity=None):
        if progress is not None:
            progress("adapter", i, settings.iterations, loss, similarity)

    try:
        history = train_wan_adapter(models, encode, loss_fn, prompt_data.PromptSampler(templates, settings.seed),
                                    settings, report, negative=negative)
        trained = wan_peft.extract(models.transformer, float(rank), info)
    finally:
        sia_peft.detach(models.transformer)
    setup.add_results(trained.info.training, [], history, setup.score_sample(None, None, images))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    trained.source = save_adapter(trained, path)
    return {"name": name, "paths": {"sia": trained.source}, "adapter": trained, "history": history,
            "trigger": class_word, "final_similarity": trained.info.training["final_similarity"]}
