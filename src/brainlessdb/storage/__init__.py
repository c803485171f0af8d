"""The storage seam (``base``) and its implementations: ``memory`` (in process), ``nats`` (JetStream KV)."""
