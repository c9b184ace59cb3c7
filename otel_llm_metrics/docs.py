"""Print the README's generated tables: ``python -m otel_llm_metrics.docs``."""

from .catalogue import markdown_table
from .config import settings_table

if __name__ == "__main__":
    print("## Instrument catalogue\n")
    print(markdown_table())
    print("\n## Configuration\n")
    print(settings_table())
