"""The local hub server (`autoload serve`, docs/hub-server.md): folders of files served over the Hugging Face
and ModelScope download protocols. Standard library only; nothing here imports the client (`autoload.hub`).

    from autoload.server import HubServer, Fault
"""

from .faults import Fault
from .core import HubServer
from .repos import Request

__all__ = ["HubServer", "Fault", "Request"]
