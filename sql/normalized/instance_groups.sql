-- One row per instance group of a heterogeneous cluster.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(range(len(job.ResourceConfig.InstanceGroups))) as instance_group_index,
        unnest(job.ResourceConfig.InstanceGroups) as instance_group
    from records
)

select
    training_job_arn,
    instance_group_index,
    instance_group.InstanceGroupName as instance_group_name,
    instance_group.InstanceType as instance_type,
    instance_group.InstanceCount as instance_count
from items
