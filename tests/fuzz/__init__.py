"""Seeded mutation fuzzing of pyrt's file inputs (.pyrt, safetensors, GGUF): tiny seed files, the
mutators, and the harness that classifies what loading a mutant does (docs/hostile-input.md)."""
