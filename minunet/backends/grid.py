"""Launch-size arithmetic shared by the kernel launch code."""


def cdiv(a, b):
    """Blocks needed to cover a items with b per block (ceiling division)."""
    return (a + b - 1) // b
