"""Over-the-air model bundles: signing, the archive they travel in, the checks a bundle passes
before it scores anything, and the manager that swaps it in, keeps the previous one and rolls
back (docs/MODELS.md)."""
