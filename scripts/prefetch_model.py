"""Rule prefetch_model: a hub model's files -> the hub cache, and a record of the commit."""

from anchorflow.io import write_json
from anchorflow.models.prefetch import prefetch_model
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
record = prefetch_model(snakemake.params.model)
for repository in record["repositories"]:
    log.info("%(hf_id)s at %(revision)s: commit %(commit)s", repository)
write_json(snakemake.output[0], record)
