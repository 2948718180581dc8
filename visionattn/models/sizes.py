"""Image-size helpers, written once for every family: ``img_size`` arguments as ``(H, W)``, the grid a stride
leaves, and the "must be a multiple of" check with its error message."""

from __future__ import annotations


def to_pair(size, what: str = "img_size") -> tuple[int, int]:
    """An int ``n`` or a pair ``(H, W)`` → ``(H, W)`` of positive ints (``ValueError`` otherwise)."""
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else None
    if pair is None or len(pair) != 2 or any(isinstance(n, bool) or int(n) != n or int(n) < 1 for n in pair):
        raise ValueError(f"{what} must be a positive int or a pair (H, W) of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def ceil_grid(hw: tuple[int, ...], reduction: int) -> tuple[int, ...]:
    """The grid after a total stride ``reduction`` with 'same' padding: ``ceil(n / reduction)`` per axis."""
    return tuple(-(-int(n) // reduction) for n in hw)


def check_multiple(hw: tuple[int, ...], stride: int, owner: str, what: str = "input", why: str = "") -> None:
    """``ValueError`` naming the size, the stride and the remainders unless every axis of ``hw`` divides."""
    if any(n % stride for n in hw):
        size = "×".join(str(n) for n in hw)
        rest = ", ".join(f"{n} % {stride} = {n % stride}" for n in hw)
        reason = f" ({why})" if why else ""
        raise ValueError(f"{owner}: {what} {size} must be a multiple of {stride}{reason} on every axis; got {rest}")


__all__ = ["ceil_grid", "check_multiple", "to_pair"]
