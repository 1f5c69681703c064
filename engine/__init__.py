"""The PersonalVideo method outside ComfyUI: diffusers models, peft's LoRA as the adapter, a command line.

The same files as the nodes (the adapter .safetensors of :mod:`..sia.file_format`, the
token as a ComfyUI embedding), the same prompts, face stack and late-step rule; only the
models and the sampling loop are diffusers' instead of ComfyUI's.  One concept per module:

- ``shipped_configs``: the architecture configs shipped with the engine (nothing is downloaded).
- ``checkpoint_keys``: SD1.5 single-file (ldm) and AnimateDiff motion-module key names to diffusers'.
- ``models``: loading checkpoints, motion modules and diffusers folders into diffusers classes.
- ``sia_peft``: peft's LoRA on exactly the spatial self-attention q/k/v, to and from our adapter files.
- ``identity_token``: the identity token in the CLIP text encoder; prompts to embeddings.
- ``late_gate``: which steps of a diffusers scheduler's run the adapter acts on.
- ``noise_table``: SD1.5's noise levels as ComfyUI's sampling holds them (the training samples' schedule).
- ``model_fingerprint``: the base model's fingerprint in the Train node's form (what a reuse compares).
- ``generate``, ``train``, ``train_token``, ``train_adapter``, ``faces``, ``identity_store``: the method.
- ``train_job``: one training from the command line's settings (``train`` and each train-many task).
- ``cli`` and ``train_many`` (Ray, imported only there): the command line.

Importing this package imports neither diffusers nor ComfyUI; the modules that need
diffusers, peft or ray import them themselves.
"""
