"""p2pdata: share curated datasets between clusters peer to peer, land them in HDFS, train."""

__version__ = "0.1.0"
