-- One row per job, UTC day it ran and configured cost-allocation tag key: the job's costs that day,
-- labelled with everything the cost reports group by. The shared input of cost_daily, cost_monthly and waste.
-- Reads the run's allocation_tags (the configured tag keys, in order) besides the warehouse tables.
with job_cost_days as (
    select * from job_cost_days
),

job_costs as (
    select * from job_costs
),

jobs as (
    select * from jobs
),

tags as (
    select * from tags
),

allocation_tags as (
    select * from allocation_tags
),

final as (
    select
        job_cost_days.*,
        cast(date_trunc('month', job_cost_days.day) as date) as month,
        job_costs.account_id,
        job_costs.region,
        coalesce(job_costs.instance_type, '(serverless)') as instance_type,
        job_costs.training_job_status,
        jobs.secondary_status,
        -- The first line of the reason: the kind of failure, without the job-specific trace after it.
        nullif(split_part(jobs.failure_reason, chr(10), 1), '') as failure_reason,
        -- Warm-pool instances another job picked up were not idle.
        coalesce(jobs.warm_pool_status = 'Reused' or jobs.warm_pool_reused_by_job is not null, false)
            as warm_pool_reused,
        job_costs.is_priced,
        allocation_tags.tag_key as allocation_tag_key,
        allocation_tags.tag_position as allocation_tag_position,
        coalesce(tags.value, '(untagged)') as allocation_tag_value
    from job_cost_days
    join job_costs using (training_job_arn)
    join jobs using (training_job_arn)
    cross join allocation_tags
    left join tags
        on job_cost_days.training_job_arn = tags.training_job_arn and allocation_tags.tag_key = tags.key
)

select * from final
