"""HDFS room: the async WebHDFS and native HDFS clients, dataset stores (HDFS and local), tiers, landing."""

from p2pdata.hdfs.client import FileStatus, WebHdfsClient
from p2pdata.hdfs.errors import (
    HdfsAlreadyExists,
    HdfsClusterError,
    HdfsConnectionError,
    HdfsError,
    HdfsFileNotFound,
    HdfsPermissionDenied,
    HdfsRemoteError,
    HdfsTlsError,
    HdfsUnsupportedOperation,
    TierError,
)
from p2pdata.hdfs.hdfs_store import CacheReport, HdfsStore
from p2pdata.hdfs.landing import (
    HashMismatch,
    LandingConflict,
    LandingPlan,
    LandingProgress,
    LandingState,
)
from p2pdata.hdfs.local_store import LocalStore
from p2pdata.hdfs.native import NativeHdfs
from p2pdata.hdfs.store import (
    LandedDataset,
    LandingResult,
    Source,
    Store,
    TierReport,
    open_store,
)
from p2pdata.hdfs.tiers import (
    EC_TIERS,
    POLICY_IDS,
    TIERS,
    parse_fsck,
    policy_name,
    resolve_ec,
    resolve_tier,
)

__all__ = [
    "EC_TIERS",
    "POLICY_IDS",
    "TIERS",
    "CacheReport",
    "FileStatus",
    "HashMismatch",
    "HdfsAlreadyExists",
    "HdfsClusterError",
    "HdfsConnectionError",
    "HdfsError",
    "HdfsFileNotFound",
    "HdfsPermissionDenied",
    "HdfsRemoteError",
    "HdfsStore",
    "HdfsTlsError",
    "HdfsUnsupportedOperation",
    "LandedDataset",
    "LandingConflict",
    "LandingPlan",
    "LandingProgress",
    "LandingResult",
    "LandingState",
    "LocalStore",
    "NativeHdfs",
    "Source",
    "Store",
    "TierError",
    "TierReport",
    "WebHdfsClient",
    "open_store",
    "parse_fsck",
    "policy_name",
    "resolve_ec",
    "resolve_tier",
]
