//! The account repository on both dialects.

use strata_store::{NewUser, Store, StoreError, UserRole};

use crate::harness::{both_dialects, migrated};

both_dialects!(
    users_are_inserted_and_found,
    emails_are_unique,
    roles_are_checked_and_changed,
    ensure_admin_creates_or_promotes_once_under_races,
);

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        display_name: "Ann".into(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        role: UserRole::Customer,
    }
}

async fn users_are_inserted_and_found(store: &Store) {
    migrated(store).await;
    let users = store.users();
    let ann = users.insert(&new_user("ann@example.com")).await.unwrap();
    assert!(ann.id > 0);
    assert_eq!(ann.role, UserRole::Customer);
    assert_eq!(users.get(ann.id).await.unwrap().as_ref(), Some(&ann));
    assert_eq!(
        users
            .find_by_email("ann@example.com")
            .await
            .unwrap()
            .as_ref(),
        Some(&ann)
    );
    assert_eq!(users.find_by_email("bob@example.com").await.unwrap(), None);
    assert_eq!(users.get(ann.id + 1000).await.unwrap(), None);
    assert!(
        !format!("{ann:?}").contains("argon2"),
        "Debug hides the hash"
    );
    assert_eq!(users.count().await.unwrap(), 1);
}

async fn emails_are_unique(store: &Store) {
    migrated(store).await;
    store
        .users()
        .insert(&new_user("ann@example.com"))
        .await
        .unwrap();
    let err = store
        .users()
        .insert(&new_user("ann@example.com"))
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
}

async fn roles_are_checked_and_changed(store: &Store) {
    migrated(store).await;
    let ann = store
        .users()
        .insert(&new_user("ann@example.com"))
        .await
        .unwrap();
    let support = store
        .users()
        .set_role(ann.id, UserRole::Support)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(support.role, UserRole::Support);
    assert_eq!(
        store
            .users()
            .set_role(999_999, UserRole::Admin)
            .await
            .unwrap(),
        None
    );
    // The CHECK constraint keeps unknown roles out even when written behind the repository.
    let err = strata_store::testing::execute(store, "UPDATE users SET role = 'owner'")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint { .. }), "{err:?}");
}

async fn ensure_admin_creates_or_promotes_once_under_races(store: &Store) {
    migrated(store).await;
    let admin = NewUser {
        role: UserRole::Customer,
        ..new_user("root@example.com")
    };
    let users = store.users();
    let (a, b, c) = tokio::join!(
        users.ensure_admin(&admin),
        users.ensure_admin(&admin),
        users.ensure_admin(&admin),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!((a.id, a.role), (b.id, UserRole::Admin));
    assert_eq!(b.id, c.id);
    assert_eq!(store.users().count().await.unwrap(), 1);

    // An existing customer is promoted; its name and password stay.
    let ann = store
        .users()
        .insert(&new_user("ann@example.com"))
        .await
        .unwrap();
    let promoted = store
        .users()
        .ensure_admin(&NewUser {
            display_name: "Other".into(),
            password_hash: "other".into(),
            ..new_user("ann@example.com")
        })
        .await
        .unwrap();
    assert_eq!(promoted.id, ann.id);
    assert_eq!(promoted.role, UserRole::Admin);
    assert_eq!(promoted.display_name, "Ann");
    assert_eq!(promoted.password_hash, ann.password_hash);
}
