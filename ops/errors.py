"""The one exception the ops CLI shows to people: its message is the whole story, on one line."""


class OpsError(Exception):
    """A failure the operator can act on (server down, bad key, unknown model...)."""
