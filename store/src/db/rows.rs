//! Rows to typed values by column name: each row type derives `FromRow` (postgres-from-row),
//! so a query's columns are matched by name, and a missing column or a mismatched type is an
//! error of the query, not a panic.

pub use postgres_from_row::FromRow;
use tokio_postgres::Row;

pub(crate) fn one<T: FromRow>(row: &Row) -> Result<T, tokio_postgres::Error> {
    T::try_from_row(row)
}

pub(crate) fn maybe<T: FromRow>(row: Option<Row>) -> Result<Option<T>, tokio_postgres::Error> {
    row.as_ref().map(T::try_from_row).transpose()
}

pub(crate) fn all<T: FromRow>(rows: Vec<Row>) -> Result<Vec<T>, tokio_postgres::Error> {
    rows.iter().map(T::try_from_row).collect()
}
