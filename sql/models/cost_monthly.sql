-- One row per UTC month, account, region, instance type, status and value of each cost-allocation tag.
-- Every configured tag key gets its own full breakdown: sum one allocation_tag_key at a time.
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

labelled as (
    select
        job_cost_days.*,
        cast(date_trunc('month', job_cost_days.day) as date) as month,
        job_costs.account_id,
        job_costs.region,
        coalesce(job_costs.instance_type, '(serverless)') as instance_type,
        job_costs.training_job_status,
        job_costs.is_priced,
        allocation_tags.tag_key as allocation_tag_key,
        coalesce(tags.value, '(untagged)') as allocation_tag_value
    from job_cost_days
    join job_costs using (training_job_arn)
    cross join allocation_tags
    left join tags
        on tags.training_job_arn = job_cost_days.training_job_arn and tags.key = allocation_tags.tag_key
),

final as (
    select
        month,
        account_id,
        region,
        instance_type,
        training_job_status,
        allocation_tag_key,
        allocation_tag_value,
        count(distinct training_job_arn) as jobs,
        count(distinct training_job_arn) filter (where not is_priced) as unpriced_jobs,
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
