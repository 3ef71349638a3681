"""AIM Engine stack: recipe engine, stack settings and Pulumi components for vLLM on AMD Instinct GPUs."""
