"""MedDRA: releases loaded from MedDRA's ASCII files, coding of verbatims, the hierarchy and SMQs (issue 17)."""
