"""Prefect flows: wiring of the steps in tasks/ and the trainer in gan/."""
