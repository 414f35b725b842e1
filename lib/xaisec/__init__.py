"""xaisec: adversarial attacks on explainable AI and their defenses."""
__version__ = "0.1.0"
