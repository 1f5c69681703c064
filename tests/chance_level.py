"""The chance level of a token-training problem: how much moving the starting vector a given distance in random
directions changes the objective (what a trained vector's drop must beat to say training, not luck, lowered it)."""
import torch


def random_move_drops(objective, start: torch.Tensor, distance: float, before: float, moves: int) -> list:
    """``before - objective(start + d)`` for ``moves`` random directions ``d`` of length ``distance`` (seeds 0..)."""
    drops = []
    for k in range(moves):
        direction = torch.randn(start.shape, generator=torch.Generator().manual_seed(k))
        drops.append(before - objective(start + direction / direction.norm() * distance))
    return drops
