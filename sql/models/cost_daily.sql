-- One row per UTC day, account, region, instance type, status and value of the first cost-allocation tag.
-- Reads the run's allocation_tags (the configured tag keys, in order) besides the warehouse tables.
with job_cost_days as (
    select * from job_cost_days
),

job_costs as (
    select * from job_costs
),

tags as (
    select * from tags
),

allocation_tags as (
    select * from allocation_tags
),

primary_tag as (
    select tag_key from allocation_tags where tag_position = 0
),

labelled as (
    select
        job_cost_days.*,
        job_costs.account_id,
        job_costs.region,
        coalesce(job_costs.instance_type, '(serverless)') as instance_type,
        job_costs.training_job_status,
        job_costs.is_priced,
        primary_tag.tag_key as allocation_tag_key,
        coalesce(tags.value, '(untagged)') as allocation_tag_value
    from job_cost_days
    join job_costs using (training_job_arn)
    cross join primary_tag
    left join tags on tags.training_job_arn = job_cost_days.training_job_arn and tags.key = primary_tag.tag_key
),

final as (
    select
        day,
        account_id,
        region,
        instance_type,
        training_job_status,
        allocation_tag_key,
        allocation_tag_value,
        count(*) as jobs,
        count(*) filter (where not is_priced) as unpriced_jobs,
        sum(instance_hours) as instance_hours,
        sum(accelerator_hours) as accelerator_hours,
        sum(compute_cost_usd) as compute_cost_usd,
        sum(warm_pool_cost_usd) as warm_pool_cost_usd,
        sum(storage_cost_usd) as storage_cost_usd,
        sum(total_cost_usd) as total_cost_usd,
        sum(spot_savings_usd) as spot_savings_usd
    from labelled
    group by all
)

select * from final
