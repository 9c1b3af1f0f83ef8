"""The control plane's own object store: checkpoints when no bucket is configured, on its
disk, reached by workers through short-lived URLs it signs itself. ``BlobStore`` holds any
blob under a key (a namespace per root), so other stores can be served the same way.

- ``blobs.py``: ``BlobStore`` (streamed, atomic, size- and sha256-checked writes; resumable
  uploads), one per namespace root.
- ``signing.py``: ``StoreUrls``, the HMAC-signed URLs of ``/api/v1/store/<namespace>/<key>``.
- ``checkpoints.py``: checkpoint upload/download URLs on this store, and the manifest check.
- ``gcs_urls.py``: the same URLs for a GCS bucket (V4 signed URLs).
"""

# Namespaces served at /api/v1/store/<namespace>/<key> (see Runtime.blobs).
CHECKPOINTS = "checkpoints"
