"""Code that runs on the sandbox side, before the kernel exists (standard library only)."""
