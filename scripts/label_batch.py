"""Label every uncached window of a rollouts folder through the Message Batches API."""

from anchorflow.data.rollouts import read_records
from anchorflow.io import read_tsv, write_json
from anchorflow.labels.batch import BatchLabeller
from anchorflow.labels.cache import ResponseCache
from anchorflow.labels.labeller import Settings, make_api, transport_settings
from anchorflow.workflow import log_to

log = log_to(snakemake.log[0])
client = transport_settings(snakemake.config["labels"])
rollouts = snakemake.wildcards.rollouts
manifest = read_tsv(snakemake.input.manifest)
usable = set(manifest.loc[manifest["rollouts"] == rollouts, "trace"])
records = [
    record
    for record in read_records(snakemake.input.records)
    if record["rollouts"] == rollouts and record["trace"] in usable
]
labeller = BatchLabeller(
    Settings.from_params(snakemake.params.labelling),
    make_api(client, log, job_deadline=False),
    ResponseCache(client["cache_dir"]),
    client["poll_interval_s"],
    client["poll_timeout_s"],
    log,
)
summary = labeller.run(records)
log.info("batch summary: %s", summary)
write_json(snakemake.output[0], {"summary": summary, "params": dict(snakemake.params.labelling)})
