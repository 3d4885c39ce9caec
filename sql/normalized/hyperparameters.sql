-- One row per hyperparameter: key/value rows, with the value also as a number when it is one.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(map_entries(job.HyperParameters)) as entry
    from records
)

select
    training_job_arn,
    entry.key as name,
    entry.value as value,
    -- Framework estimators JSON-quote their values ("0.001"); the number inside still counts.
    try_cast(trim(entry.value, '"') as double) as numeric_value
from items
