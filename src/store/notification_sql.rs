//! Inbox SQL both backends run as is: only how an id is bound differs (a `UUID` on
//! PostgreSQL, hyphenated text on SQLite), so the listing is written once, generic
//! over the database.

use sqlx::{Arguments, Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::{StoreError, StoreResult};
use crate::notifications::model::{
    Notification, NotificationFilter, NotificationPage, NotificationQuery,
};

/// A `notifications` row, as both backends read it.
pub(super) const COLUMNS: &str = "n.id, n.user_id, n.type, n.title, n.message, n.data, \
                                  n.is_read, n.is_archived, n.priority, n.created_at";

/// One page of a user's notifications, newest first, and the number matching the
/// filter. `user` is the user's id as the backend binds it; `Row` is the backend's
/// row type.
pub(super) async fn list_notifications<DB, Row>(
    pool: &Pool<DB>,
    user: impl Bind<DB> + Clone,
    query: &NotificationQuery,
) -> StoreResult<NotificationPage>
where
    DB: Database,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    Row: for<'r> FromRow<'r, DB::Row> + TryInto<Notification, Error = StoreError> + Send + Unpin,
    i64: Bind<DB>,
    bool: Bind<DB>,
    String: Bind<DB>,
{
    let mut sql = String::from("SELECT COUNT(*) FROM notifications n");
    let mut count = Statement::<DB>::new(&mut sql);
    count.filter(user.clone(), &query.filter)?;
    let args = count.args;
    let (total,): (i64,) = sqlx::query_as_with(&sql, args).fetch_one(pool).await?;

    let mut sql = format!("SELECT {COLUMNS} FROM notifications n");
    let mut page = Statement::<DB>::new(&mut sql);
    page.filter(user, &query.filter)?;
    page.push(" ORDER BY n.created_at DESC, n.id DESC LIMIT ")
        .bind(query.limit)?
        .push(" OFFSET ")
        .bind(query.offset)?;
    let args = page.args;
    let rows: Vec<Row> = sqlx::query_as_with(&sql, args).fetch_all(pool).await?;
    Ok(NotificationPage {
        notifications: rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<StoreResult<_>>()?,
        total,
        limit: query.limit,
        offset: query.offset,
    })
}

/// A value either backend can bind, whatever the query's lifetime.
pub(super) trait Bind<DB: Database>:
    for<'q> Encode<'q, DB> + Type<DB> + Send + 'static
{
}

impl<DB: Database, T> Bind<DB> for T where T: for<'q> Encode<'q, DB> + Type<DB> + Send + 'static {}

/// Appends to SQL text and collects its arguments alongside (sqlx's `QueryBuilder`
/// lends its arguments to the query it builds, which generic code cannot run).
struct Statement<'s, 'q, DB: Database> {
    sql: &'s mut String,
    args: DB::Arguments<'q>,
}

impl<'s, 'q, DB: Database> Statement<'s, 'q, DB> {
    fn new(sql: &'s mut String) -> Self {
        Self {
            sql,
            args: Default::default(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder (`$n` or `?`) bound to `value`.
    fn bind(&mut self, value: impl Bind<DB>) -> StoreResult<&mut Self> {
        self.args
            .add(value)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
        self.args
            .format_placeholder(self.sql)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        Ok(self)
    }

    /// `WHERE` for one user's listing (uses `notifications_user_created_idx`).
    fn filter(&mut self, user: impl Bind<DB>, filter: &NotificationFilter) -> StoreResult<()>
    where
        bool: Bind<DB>,
        String: Bind<DB>,
    {
        self.push(" WHERE n.user_id = ").bind(user)?;
        self.push(" AND n.is_archived = ").bind(filter.archived)?;
        if let Some(unread) = filter.unread {
            self.push(" AND n.is_read = ").bind(!unread)?;
        }
        if let Some(kind) = &filter.kind {
            self.push(" AND n.type = ")
                .bind(kind.as_str().to_string())?;
        }
        if let Some(priority) = filter.priority {
            self.push(" AND n.priority = ")
                .bind(priority.as_str().to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::UserId;
    use crate::notifications::model::{
        ListFilterRequest, ListRequest, NewNotification, NotificationQuery, NotificationType,
        Priority,
    };
    use crate::store::sqlite::SqliteStore;
    use crate::store::NotificationStore;

    fn query(limit: i64, offset: i64, filter: ListFilterRequest) -> NotificationQuery {
        let request = ListRequest {
            limit: Some(limit),
            offset: Some(offset),
            filter: Some(filter),
        };
        NotificationQuery::parse(request).unwrap()
    }

    #[tokio::test]
    async fn listing_filters_and_pages_one_users_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let (alice, bob) = (UserId::new_random(), UserId::new_random());
        let mut ids = Vec::new();
        for (i, kind) in ["comment", "like", "comment", "like", "comment"]
            .into_iter()
            .enumerate()
        {
            let new = NewNotification {
                user_id: alice,
                kind: NotificationType::parse(kind.into()).unwrap(),
                title: format!("n{i}"),
                message: String::new(),
                data: None,
                priority: [Priority::Normal, Priority::High][i % 2],
            };
            ids.push(store.insert_notification(&new).await.unwrap().id);
        }
        let other = NewNotification {
            user_id: bob,
            kind: NotificationType::parse("comment".into()).unwrap(),
            title: "not alice's".into(),
            message: String::new(),
            data: None,
            priority: Priority::Normal,
        };
        store.insert_notification(&other).await.unwrap();
        store.mark_read(alice, ids[4]).await.unwrap();
        store.archive(alice, ids[0]).await.unwrap();

        let listed = |page: &crate::notifications::model::NotificationPage| {
            page.notifications.iter().map(|n| n.id).collect::<Vec<_>>()
        };
        // The inbox: archived rows out, newest first, paged, with the full total.
        let inbox = store
            .list_notifications(alice, &query(2, 1, ListFilterRequest::default()))
            .await
            .unwrap();
        assert_eq!((inbox.total, listed(&inbox)), (4, vec![ids[3], ids[2]]));
        let unread_comments = ListFilterRequest {
            unread: Some(true),
            kind: Some("comment".into()),
            ..Default::default()
        };
        let page = store
            .list_notifications(alice, &query(10, 0, unread_comments))
            .await
            .unwrap();
        assert_eq!((page.total, listed(&page)), (1, vec![ids[2]]));
        let high = ListFilterRequest {
            priority: Some(Priority::High),
            ..Default::default()
        };
        let page = store
            .list_notifications(alice, &query(10, 0, high))
            .await
            .unwrap();
        assert_eq!(listed(&page), vec![ids[3], ids[1]]);
        let archived = ListFilterRequest {
            archived: Some(true),
            ..Default::default()
        };
        let page = store
            .list_notifications(alice, &query(10, 0, archived))
            .await
            .unwrap();
        assert_eq!((page.total, listed(&page)), (1, vec![ids[0]]));
    }
}
