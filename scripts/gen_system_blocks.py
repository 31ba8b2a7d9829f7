"""Regenerates store/data/system_blocks.json from the installed `prefect` 2.x package.

Stratus registers these block types and schemas on start and on
`POST /block_types/install_system_block_types`, as a Prefect 2.20 server does on start
(`run_block_auto_registration`):

- the core blocks of the client's block registry, six of them protected (Webhook, JSON,
  DateTime, Secret, LocalFileSystem, Process: `_install_protected_system_blocks`);
- the integration blocks of the bundled `collection_blocks_data.json` (prefect-aws,
  prefect-gcp, ...), whose schemas reference each other's (`block_schema_references`).

Every schema carries the checksum the client computes for it, so a test can check that
Stratus computes the same. Run with the Python that has the stock client:
`python scripts/gen_system_blocks.py`.
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
from prefect.server.models.block_registration import COLLECTIONS_BLOCKS_DATA_PATH
from prefect.utilities.dispatch import get_registry_for_type

PROTECTED = [
    prefect.blocks.webhook.Webhook,
    prefect.blocks.system.JSON,
    prefect.blocks.system.DateTime,
    prefect.blocks.system.Secret,
    prefect.filesystems.LocalFileSystem,
    prefect.infrastructure.Process,
]
PROTECTED_SLUGS = {cls._to_block_type().slug for cls in PROTECTED}

core = []
# Registry (definition) order, as the server registers them: DockerRegistry before the
# DockerContainer that references it.
for key, cls in get_registry_for_type(Block).items():
    module = getattr(cls, "__module__", "")
    if not module.startswith("prefect.") or getattr(cls, "_block_type_slug", None) is None and cls is Block:
        continue
    try:
        block_type = cls._to_block_type()
        fields = cls.schema()
        core.append(
            {
                "block_type": {
                    "name": block_type.name,
                    "slug": block_type.slug,
                    "logo_url": str(block_type.logo_url) if block_type.logo_url else None,
                    "documentation_url": str(block_type.documentation_url) if block_type.documentation_url else None,
                    "description": block_type.description,
                    "code_example": block_type.code_example,
                    "is_protected": block_type.slug in PROTECTED_SLUGS,
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

collections = []
data = json.loads(pathlib.Path(COLLECTIONS_BLOCKS_DATA_PATH).read_text())
for collection in data["collections"].values():
    for block_type in collection["block_types"].values():
        schema = block_type.pop("block_schema")
        collections.append(
            {
                "block_type": {
                    "name": block_type["name"],
                    "slug": block_type["slug"],
                    "logo_url": block_type.get("logo_url"),
                    "documentation_url": block_type.get("documentation_url"),
                    "description": block_type.get("description"),
                    "code_example": block_type.get("code_example"),
                    "is_protected": False,
                },
                "schema": {
                    "fields": schema["fields"],
                    "capabilities": schema.get("capabilities", []),
                    "version": schema["version"],
                    "checksum": Block._calculate_schema_checksum(schema["fields"]),
                },
            }
        )

path = pathlib.Path(__file__).resolve().parent.parent / "store" / "data" / "system_blocks.json"
path.write_text(
    json.dumps(
        {"prefect_version": prefect.__version__, "blocks": core, "collections": collections},
        indent=1,
        sort_keys=True,
    )
    + "\n"
)
print(f"wrote {len(core)} core and {len(collections)} collection block types to {path}")
