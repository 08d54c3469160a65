"""A resident DICOM node (`medseg listen`): C-STORE in, plans out, sessions kept warm."""

from medseg.listen.node import Destination, Listener, ListenOptions

__all__ = ["Destination", "Listener", "ListenOptions"]
