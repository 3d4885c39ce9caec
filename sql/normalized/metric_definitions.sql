-- One row per metric definition of a job's algorithm.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(range(len(job.AlgorithmSpecification.MetricDefinitions))) as metric_definition_index,
        unnest(job.AlgorithmSpecification.MetricDefinitions) as definition
    from records
)

select
    training_job_arn,
    metric_definition_index,
    definition.Name as name,
    definition.Regex as regex
from items
