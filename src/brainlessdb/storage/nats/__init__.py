"""NATS JetStream KV behind the storage seam: the only package that imports ``nats``."""
