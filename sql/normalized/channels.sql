-- One row per input data channel.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(range(len(job.InputDataConfig))) as channel_index,
        unnest(job.InputDataConfig) as channel
    from records
)

select
    training_job_arn,
    channel_index,
    channel.ChannelName as channel_name,
    case
        when channel.DataSource.S3DataSource is not null then 'S3'
        when channel.DataSource.FileSystemDataSource is not null then 'FileSystem'
        when channel.DataSource.DatasetSource is not null then 'Dataset'
    end as data_source_type,
    channel.DataSource.S3DataSource.S3Uri as s3_uri,
    channel.DataSource.S3DataSource.S3DataType as s3_data_type,
    channel.DataSource.S3DataSource.S3DataDistributionType as s3_data_distribution_type,
    channel.DataSource.FileSystemDataSource.FileSystemId as file_system_id,
    channel.DataSource.FileSystemDataSource.FileSystemType as file_system_type,
    channel.DataSource.FileSystemDataSource.DirectoryPath as directory_path,
    channel.ContentType as content_type,
    channel.CompressionType as compression_type,
    channel.RecordWrapperType as record_wrapper_type,
    channel.InputMode as input_mode
from items
