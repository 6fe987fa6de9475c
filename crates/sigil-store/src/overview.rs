//! Fleet-wide counts for the console's overview, each answered from an index (devices_state,
//! certificates_expiry) rather than by reading devices one by one.

use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::{Store, StoreError};

/// The windows the overview counts expiring certificates in, in days.
pub const EXPIRY_WINDOWS: [i64; 3] = [7, 30, 90];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventorySummary {
    /// Devices per lifecycle state (states with none are absent).
    pub devices_by_state: Vec<(String, i64)>,
    /// Live certificates whose validity ends within each of [`EXPIRY_WINDOWS`] from now.
    pub expiring: Vec<(i64, i64)>,
    /// Live certificates already past their validity (nothing renewed them).
    pub expired: i64,
    pub products: i64,
}

impl Store {
    pub async fn inventory_summary(
        &self,
        now: OffsetDateTime,
    ) -> Result<InventorySummary, StoreError> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM devices GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        let devices_by_state = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let live = |from: i64, to: i64| {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM certificates WHERE status = 'active' AND not_after > $1 AND not_after <= $2",
            )
            .bind(from)
            .bind(to)
        };
        let start = now.unix_timestamp();
        let mut expiring = Vec::with_capacity(EXPIRY_WINDOWS.len());
        for days in EXPIRY_WINDOWS {
            let end = (now + Duration::days(days)).unix_timestamp();
            let n: i64 = live(start, end).fetch_one(&self.pool).await?.try_get("n")?;
            expiring.push((days, n));
        }
        let expired: i64 = live(i64::MIN / 2, start)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let products: i64 = sqlx::query("SELECT COUNT(*) AS n FROM products")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(InventorySummary {
            devices_by_state,
            expiring,
            expired,
            products,
        })
    }
}
