"""Regenerates shared/data/system_blocks.json from the installed `prefect` 2.x package.

Stratus registers these block types and schemas on start and on
`POST /block_types/install_system_block_types`, as a Prefect server does. Run with the
Python that has the stock client: `python scripts/gen_system_blocks.py`.
"""

import json
import pathlib

import prefect
import prefect.blocks.notifications  # noqa: F401 (registers the blocks)
import prefect.blocks.system  # noqa: F401
import prefect.blocks.webhook  # noqa: F401
import prefect.filesystems  # noqa: F401
import prefect.infrastructure  # noqa: F401
from prefect.blocks.core import Block
from prefect.utilities.dispatch import get_registry_for_type

out = []
for key, cls in sorted(get_registry_for_type(Block).items()):
    module = getattr(cls, "__module__", "")
    if not module.startswith("prefect.") or getattr(cls, "_block_type_slug", None) is None and cls is Block:
        continue
    try:
        block_type = cls._to_block_type()
        fields = cls.schema()
        out.append(
            {
                "block_type": {
                    "name": block_type.name,
                    "slug": block_type.slug,
                    "logo_url": str(block_type.logo_url) if block_type.logo_url else None,
                    "documentation_url": str(block_type.documentation_url) if block_type.documentation_url else None,
                    "description": block_type.description,
                    "code_example": block_type.code_example,
                },
                "schema": {
                    "fields": fields,
                    "capabilities": sorted(cls.get_block_capabilities()),
                    "version": cls.get_block_schema_version(),
                    "checksum": cls._calculate_schema_checksum(),
                },
            }
        )
    except Exception as exc:  # a block that cannot describe itself is skipped
        print("skipped", key, exc)

path = pathlib.Path(__file__).resolve().parent.parent / "shared" / "data" / "system_blocks.json"
path.write_text(json.dumps({"prefect_version": prefect.__version__, "blocks": out}, indent=1, sort_keys=True) + "\n")
print(f"wrote {len(out)} block types to {path}")
