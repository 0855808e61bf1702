"""The local runtime behind `mqless dev`: template.yaml's stack in one process, moto as AWS."""
