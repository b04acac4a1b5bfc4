"""Rule write_config: the validated config (schema defaults filled in) -> YAML for the report."""

import json

import yaml

from anchorflow.io import write_text
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
config = json.loads(json.dumps(snakemake.params.config))
write_text(snakemake.output[0], yaml.safe_dump(config, sort_keys=True, allow_unicode=True))
log.info("wrote the validated config of run %s", config["run"])
