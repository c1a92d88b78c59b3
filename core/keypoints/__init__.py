"""Keypoint matchers for whole images (shared-modality matching, paper section 3.4)."""
