-- One row per region and instance type: how much of the usage is priced, and how much of the cost rests on
-- prices nobody checked against a bill (instance_prices.verified = false).
with job_costs as (
    select * from job_costs
),

final as (
    select
        region,
        coalesce(instance_type, '(serverless)') as instance_type,
        count(*) as jobs,
        count(*) filter (where is_priced) as priced_jobs,
        coalesce(sum(instance_hours), 0) as instance_hours,
        coalesce(sum(instance_hours) filter (where is_priced), 0) as priced_instance_hours,
        coalesce(sum(total_cost_usd), 0) as total_cost_usd,
        coalesce(sum(total_cost_usd) filter (where not price_verified), 0) as unverified_cost_usd
    from job_costs
    group by region, coalesce(instance_type, '(serverless)')
)

select * from final
