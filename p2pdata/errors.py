"""Every error p2pdata raises on purpose. Messages are written for the user who reads them."""


class P2pdataError(Exception):
    """Base class: the message names what was wrong and, where it helps, what to do."""


class ConfigError(P2pdataError):
    """config.toml (or an option) holds something invalid."""


class IdentityError(P2pdataError):
    """The cluster identity is missing, unreadable, or would be overwritten."""


class CatalogError(P2pdataError):
    """A catalog or manifest was rejected. Subclasses say why."""


class BadSignature(CatalogError):
    pass


class UntrustedKey(CatalogError):
    pass


class Rollback(CatalogError):
    pass


class Expired(CatalogError):
    pass


class TooLarge(CatalogError):
    pass


class MalformedData(CatalogError):
    """Wrong types, missing fields or undecodable bytes."""


class UnsafePath(MalformedData):
    """A file path that is absolute, has `..`, repeats or is not normalised."""


class PublishError(P2pdataError):
    pass


class NotFound(P2pdataError):
    pass


class NotHeld(NotFound):
    """No held catalog lists the dataset (a peer whose catalog we refused may)."""

    @staticmethod
    def hint(refused: int) -> str:
        """What to add to "not found" when `refused` peers served catalogs we refuse."""
        if not refused:
            return ""
        return (f"; {refused} peer(s) offered a catalog this cluster refuses (an untrusted "
                "publisher, or one that did not prove its URL): see `p2pdata peers`")


class Ambiguous(P2pdataError):
    pass


class StoreError(P2pdataError):
    """A dataset store (HDFS or local) failed."""


class LandingError(StoreError):
    pass


class TransferError(P2pdataError):
    pass


class StagingFull(TransferError):
    pass


class TrainingError(P2pdataError):
    pass


class JobSpecError(TrainingError):
    pass


class PeerError(P2pdataError):
    """Another daemon answered badly or not at all."""


class DaemonNotRunning(P2pdataError):
    pass
