"""A local fake of the Compute Engine v1 API (plus Service Usage, OAuth token and Cloud Quotas)
that the unmodified google.cloud collection, its inventory plugin and gcloud talk to.

See gce_sandbox/README.md. Entry point: `python -m gce_sandbox --help`.
"""

__version__ = "0.1.0"
