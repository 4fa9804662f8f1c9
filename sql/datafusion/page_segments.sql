-- HTML run report: clients per segment (label, value). Tables: client_segmentation.
SELECT segment AS label, count(*) AS value
FROM client_segmentation
GROUP BY segment
ORDER BY value DESC, label
