package s3store

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sirupsen/logrus"
)

// abortStaleUploads aborts the multipart uploads of blobs that were started
// more than Options.StaleUploadAge ago. Every upload runs under
// Options.TransferTimeout, which is shorter, so such an upload's writer is
// gone (a process that crashed or was killed mid-upload), whichever
// instance it was: its parts would otherwise cost space for good. Only
// uploads under blobs/ (and New's probes/) are touched, nothing else in
// the bucket. It is best
// effort: a failure is logged (the bucket's lifecycle rule
// AbortIncompleteMultipartUpload does the same job), and start-up goes on.
func (b *Backend) abortStaleUploads(ctx context.Context) {
	ctx, cancel := b.opContext(ctx)
	defer cancel()
	cutoff := time.Now().Add(-b.staleUploadAge)
	aborted, kept := 0, 0
	for _, prefix := range []string{blobPrefix, probePrefix} {
		pages := s3.NewListMultipartUploadsPaginator(b.client, &s3.ListMultipartUploadsInput{
			Bucket: aws.String(b.bucket),
			Prefix: aws.String(prefix),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				b.log.WithError(err).Warn("listing the bucket's multipart uploads to abort abandoned ones")
				return
			}
			for _, u := range page.Uploads {
				if u.Initiated == nil || !u.Initiated.Before(cutoff) {
					kept++
					continue
				}
				log := b.log.WithFields(logrus.Fields{
					"object": aws.ToString(u.Key), "upload_id": aws.ToString(u.UploadId), "initiated": u.Initiated.UTC(),
				})
				b.abortUpload(ctx, aws.ToString(u.Key), aws.ToString(u.UploadId), log)
				aborted++
			}
		}
	}
	if aborted > 0 {
		b.log.WithFields(logrus.Fields{"aborted": aborted, "in_progress": kept, "older_than": b.staleUploadAge.String()}).Info("aborted abandoned blob uploads")
	}
}
