"""Privacy: anonymize image folders against a recognizer with K-A3 and verify the result."""

from robustlab.privacy.anonymize import AnonymizeResult, anonymize_folder
from robustlab.privacy.paths import check_paths, scan_images

__all__ = ["AnonymizeResult", "anonymize_folder", "check_paths", "scan_images"]
