"""medseg: automatic MRI slice positioning and whole-spine composing."""
__version__ = "0.1.0"
